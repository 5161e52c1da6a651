"""Grading a course: a folder of submissions in one batch, feedback, a gradebook.

A submission is ``STUDENT_ASSIGNMENT.ipynb`` (or the zip otter's export cell makes, renamed
the same way). Each is graded in two steps, each in processes of its own:

1. ``otter run`` with the assignment's autograder (the public checks, and any hidden check a
   chapter still writes as plain asserts), in a subprocess with a timeout and resource limits;
2. the exercise's hidden parts (:mod:`.behaviour`): the submission's code served from a
   sandboxed process, on inputs drawn for this grading run.

A submission that cannot be graded (not a notebook, a name of no assignment, a crash, a
timeout) scores what it scored so far and its feedback says why; the batch goes on.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from scripts.coursework import behaviour

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600  # seconds for one submission's otter run
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")


@dataclass
class Check:
    exercise: str
    check: str  # "public checks" (otter) or a hidden part's name
    score: float
    max: float
    message: str = ""
    key: str = ""  # the question (public checks) or QUESTION:PART (a hidden part)


@dataclass
class Graded:
    student: str
    assignment: str
    file: str
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return sum(c.score for c in self.checks)

    @property
    def max(self) -> float:
        return sum(c.max for c in self.checks)


def _limits(cpu_seconds: int, memory: int = 8 * 2**30):
    def apply():
        import resource

        for limit, value in ((resource.RLIMIT_CPU, cpu_seconds), (resource.RLIMIT_AS, memory),
                             (resource.RLIMIT_FSIZE, behaviour.FILE_LIMIT), (resource.RLIMIT_CORE, 0)):
            try:
                resource.setrlimit(limit, (value, value))
            except (ValueError, OSError):
                pass
    return apply


def _otter() -> str:
    exe = Path(sys.executable).with_name("otter")
    return str(exe) if exe.exists() else "otter"


def sandboxed(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[int | None, str]:
    """Run ``cmd`` in a session of its own with CPU, memory and file-size limits; after
    ``timeout`` seconds kill the whole session. Returns (exit status or None, output)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, preexec_fn=_limits(int(timeout * 2) + 30), start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out


def _public_message(output: str) -> str:
    """The failed line and the error of otter's doctest report, in two lines."""
    failed = re.findall(r"Failed example:\n\s+(.+)", output)
    errors = [line.strip() for line in output.split("\n") if re.match(r"\s*\w+(Error|Exception)\b.*:", line)]
    if not failed:
        return ""
    return f"`{failed[0].strip()}` failed" + (f": {errors[-1]}" if errors else "")


def otter_scores(notebook: Path, autograder_zip: Path, timeout: float = TIMEOUT) -> list[Check]:
    """The otter-run checks of one submission (one Check per question)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
        rc, out = sandboxed([_otter(), "run", "--no-logo", "-a", str(autograder_zip), "-o", tmp, str(notebook)],
                            timeout, env)
        results = Path(tmp) / "results.json"
        if rc is None:
            raise RuntimeError(f"the notebook did not finish within {int(timeout)} s (an endless loop, "
                               "or too much work for the grader's time limit)")
        if rc != 0 or not results.exists():
            tail = "\n".join(out.strip().split("\n")[-3:])
            raise RuntimeError(f"otter could not run the notebook: {tail}")
        tests = json.loads(results.read_text())["tests"]
    public = next((t.get("output", "") for t in tests if t["name"] == "Public Tests"), "")
    checks = []
    for t in tests:
        if t.get("max_score") is None:
            continue
        name = t["name"]
        score, most = float(t["score"]), float(t["max_score"])
        msg = ""
        if score < most:
            block = re.search(rf"{re.escape(name)} results:(.*?)(?=\n\S+ results:|\Z)", public, re.S)
            msg = _public_message(block.group(1) if block else t.get("output", "")) or "a check failed"
        checks.append(Check(name, "public checks", score, most, msg, name))
    return checks


def read_parts(assignments: Path, name: str) -> dict:
    path = assignments / name / "autograder" / "hidden_parts.json"
    return json.loads(path.read_text()) if path.exists() else {}


def grade_submission(notebook: Path, assignments: Path, name: str, seed: int,
                     timeout: float = TIMEOUT, student: str = "", part_timeout: float = 120.0) -> Graded:
    """Grade one submission of assignment ``name``: its otter checks, then its hidden parts."""
    from scripts.course import autograder_zip

    graded = Graded(student, name, notebook.name)
    t0 = time.perf_counter()
    parts = read_parts(assignments, name)
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as exc:  # not a notebook at all: zero, and say so
        graded.problems.append(f"{notebook.name} is not a readable notebook ({type(exc).__name__}: {exc}); "
                               "hand in the .ipynb file saved from Jupyter or Colab")
        nb = None
    if nb is not None:
        try:
            graded.checks += otter_scores(notebook, autograder_zip(assignments, name), timeout)
        except (RuntimeError, FileNotFoundError) as exc:
            graded.problems.append(str(exc))
        cells = behaviour.submission_cells(nb)
        for label, p in parts.items():
            sp = behaviour.spec(p["code"], p["setup"], f"{name}: {label}")
            for r in behaviour.run_parts(sp, p["setup"], cells, seed, part_timeout):
                graded.checks.append(Check(label, r.description, r.score, 1.0, r.message, f"{label}:{r.name}"))
    # every check counts in the maximum, graded or not
    seen = {(c.exercise, c.check) for c in graded.checks}
    for label, most in _maxima(assignments, name).items():
        if (label, "public checks") not in seen:
            graded.checks.append(Check(label, "public checks", 0.0, most, "not graded: see the problems above", label))
    for label, p in parts.items():
        sp = behaviour.spec(p["code"], p["setup"], f"{name}: {label}")
        for part in sp.parts:
            if (label, part.description) not in seen:
                graded.checks.append(Check(label, part.description, 0.0, 1.0, "not graded: see the problems above",
                                           f"{label}:{part.name}"))
    graded.seconds = round(time.perf_counter() - t0, 1)
    return graded


def _maxima(assignments: Path, name: str) -> dict[str, float]:
    """Each question's otter points, from the autograder notebook's otter metadata."""
    nb = nbformat.read(assignments / name / "autograder" / f"{name}.ipynb", as_version=4)
    tests = nb.metadata.get("otter", {}).get("tests", {})
    return {label: float(test.get("points", 0)) for label, test in tests.items()}


# ------------------------------------------------------------------ the batch
def parse_name(path: Path, names: list[str]) -> tuple[str, str]:
    """``(student, assignment)`` from ``STUDENT_ASSIGNMENT.ipynb`` (or ``.zip``); ValueError
    naming the expected form otherwise."""
    stem = path.stem
    for name in sorted(names, key=len, reverse=True):
        if stem.endswith("_" + name) and _NAME.match(stem[: -len(name) - 1] or "-"):
            return stem[: -len(name) - 1], name
    raise ValueError(f"{path.name}: not named STUDENT_ASSIGNMENT.ipynb with ASSIGNMENT one of "
                     f"{', '.join(sorted(names))} (for example alice_{sorted(names)[0]}.ipynb)")


def read_roster(path: Path | None) -> list[str]:
    """The students of a roster CSV (a column ``student``: the id used in file names)."""
    if path is None:
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "student" not in rows[0]:
        raise ValueError(f"{path}: a roster is a CSV file with a column `student` (the id students put "
                         "in their file names), one row per student")
    return [r["student"].strip() for r in rows if r["student"].strip()]


def read_weights(path: Path | None, names: list[str]) -> dict[str, float]:
    """Each assignment's weight in the course grade, from the config's ``weights`` (default 1)."""
    weights = {n: 1.0 for n in names}
    if path is None:
        return weights
    import yaml

    config = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    given = config.get("weights", {}) or {}
    chapters = {p.stem for p in (ROOT / "book").glob("*.md")}
    unknown = sorted(set(given) - set(names) - chapters)
    if unknown:
        raise ValueError(f"{path}: weights for {', '.join(unknown)}, which is no assignment "
                         f"({', '.join(sorted(names))})")
    if any(not isinstance(v, (int, float)) or v < 0 for v in given.values()):
        raise ValueError(f"{path}: every weight must be a number >= 0")
    weights.update({k: float(v) for k, v in given.items() if k in weights})
    return weights


def _notebook_of(path: Path, tmp: Path) -> Path:
    """The notebook of a submission: the file itself, or the one ``.ipynb`` in an otter zip."""
    if path.suffix != ".zip":
        return path
    with zipfile.ZipFile(path) as z:
        inside = [n for n in z.namelist() if n.endswith(".ipynb") and "/" not in n.strip("/")]
        if len(inside) != 1:
            raise ValueError(f"{path.name}: the zip holds {len(inside)} notebooks; expected the one "
                             "otter's export cell puts in it")
        out = tmp / f"{path.stem}.ipynb"
        out.write_bytes(z.read(inside[0]))
    return out


def feedback(g: Graded, seed: int) -> str:
    """The readable feedback of one submission (Markdown)."""
    lines = [f"# {g.assignment}: feedback for {g.student}", "",
             f"Score: **{g.score:g} / {g.max:g}** (file `{g.file}`).", ""]
    for p in g.problems:
        lines += [f"**Problem:** {p}", ""]
    for label in dict.fromkeys(c.exercise for c in g.checks):
        lines += [f"## {label}", "", "| check | points | what went wrong |", "| --- | --- | --- |"]
        for c in (c for c in g.checks if c.exercise == label):
            msg = (c.message or ("" if c.score == c.max else "failed")).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {c.check} | {c.score:g} / {c.max:g} | {msg} |")
        lines.append("")
    lines += [f"The hidden checks ran on inputs drawn for this grading run (seed {seed}); the "
              "public checks are the ones `grader.check` runs in your notebook.", ""]
    return "\n".join(lines)


def grade_folder(submissions: Path, assignments: Path, out: Path | None = None, roster: Path | None = None,
                 config: Path | None = None, seed: int | None = None, timeout: float = TIMEOUT,
                 log=print) -> dict:
    """Grade every ``*.ipynb`` / ``*.zip`` in ``submissions``; write ``out/feedback/*.md``,
    ``out/results/*.json``, ``out/grades.csv`` (one row per submission) and
    ``out/gradebook.csv`` (one row per student, one column per assignment, the weighted
    total). Returns a summary."""
    from pmi_tutorial import files

    if not submissions.is_dir():
        raise FileNotFoundError(f"{submissions}: no such folder of submitted notebooks")
    names = sorted(p.name for p in assignments.iterdir() if (p / "autograder").is_dir()) \
        if assignments.is_dir() else []
    if not names:
        raise FileNotFoundError(f"no assignment in {assignments}; run `make assignments` first")
    students = read_roster(roster)
    weights = read_weights(config, names)
    seed = secrets.randbits(63) if seed is None else int(seed)
    out = out or submissions / "graded"
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    (out / "results").mkdir(parents=True, exist_ok=True)
    graded: list[Graded] = []
    skipped: list[str] = []
    paths = sorted(p for p in submissions.iterdir() if p.suffix in (".ipynb", ".zip") and p.is_file())
    for path in paths:
        try:
            student, name = parse_name(path, names)
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        if students and student not in students:
            skipped.append(f"{path.name}: student {student!r} is not on the roster {roster}")
            log(f"course: {path.name}: {student!r} is not on the roster; graded anyway")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                nb = _notebook_of(path, Path(tmp))
                g = grade_submission(nb, assignments, name, seed, timeout, student)
            except Exception as exc:  # never stop the batch
                g = Graded(student, name, path.name, problems=[f"could not be graded: {type(exc).__name__}: {exc}"])
        g.file = path.name
        graded.append(g)
        stem = f"{student}_{name}"
        files.write_text_atomic(out / "feedback" / f"{stem}.md", feedback(g, seed))
        files.write_json_atomic(out / "results" / f"{stem}.json",
                                {"seed": seed, **asdict(g), "score": g.score, "max": g.max})
        log(f"{path.name:40s} {g.score:5.1f} / {g.max:5.1f}  ({g.seconds} s)"
            + (f"  problem: {g.problems[0][:80]}" if g.problems else ""))
    _write_grades(out / "grades.csv", graded)
    _write_gradebook(out / "gradebook.csv", graded, students, names, weights, assignments)
    return {"graded": len(graded), "skipped": skipped, "seed": seed, "out": out}


def _write_grades(path: Path, graded: list[Graded]) -> None:
    from pmi_tutorial import files

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["student", "assignment", "file", "score", "max", "seconds", "problems"])
    for g in graded:
        w.writerow([g.student, g.assignment, g.file, f"{g.score:g}", f"{g.max:g}", g.seconds, "; ".join(g.problems)])
    files.write_text_atomic(path, buf.getvalue())


def assignment_max(assignments: Path, name: str) -> float:
    parts = read_parts(assignments, name)
    n_parts = sum(len(behaviour.spec(p["code"], p["setup"], name).parts) for p in parts.values())
    return sum(_maxima(assignments, name).values()) + n_parts


def _write_gradebook(path: Path, graded: list[Graded], students: list[str], names: list[str],
                     weights: dict[str, float], assignments: Path) -> None:
    """Student x assignment: the best-scoring submission's points, 0 if none; the weighted
    total as a percentage (each assignment's share of its maximum, weighted)."""
    from pmi_tutorial import files

    best: dict[tuple[str, str], float] = {}
    for g in graded:
        key = (g.student, g.assignment)
        best[key] = max(best.get(key, 0.0), g.score)
    everyone = list(dict.fromkeys(students + sorted({g.student for g in graded})))
    maxima = {n: assignment_max(assignments, n) for n in names}
    total_weight = sum(weights.values()) or 1.0
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["student"] + [f"{n} (of {maxima[n]:g}, weight {weights[n]:g})" for n in names] + ["total %"])
    for s in everyone:
        row = [best.get((s, n), 0.0) for n in names]
        total = 100 * sum(weights[n] * r / maxima[n] for n, r in zip(names, row) if maxima[n]) / total_weight
        w.writerow([s] + [f"{r:g}" for r in row] + [f"{total:.1f}"])
    files.write_text_atomic(path, buf.getvalue())
