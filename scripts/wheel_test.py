"""The package as ``pip install`` delivers it: ``python scripts/wheel_test.py [--nbval | --chapters NAME,...]``.

``make nbval`` runs it with ``--nbval``, ``make wheel-test`` without.  In a temporary folder
outside the repository it

1. builds a wheel of the package (``pip wheel --no-deps``, no build isolation);
2. creates a fresh virtual environment there and installs the wheel into it.  The wheel's
   dependencies (torch, numpy, ...) are not downloaded again: a ``.pth`` file lends the fresh
   environment the site-packages of the Python running this script, after its own, so the
   package itself can only come from the wheel (checked: ``pmi_tutorial.__file__`` lies in the
   fresh environment; ``.pth`` files of the lent folder, such as an editable install's, are
   not run);
3. from a working folder that holds nothing of the repository, loads every committed result
   (``files.committed_result`` for each of ``files.committed_names()``) and checks there is
   one for each file in ``pmi_tutorial/results/`` of the repository;
4. executes every reader notebook whose chapter reads committed results (default: the
   chapters that call ``committed_*`` or ``load_results``) in that folder, on a kernel of the
   fresh environment, in the quick profile; with ``--nbval``, instead runs nbval over every
   reader notebook there, keeping the outputs for the book build (``scripts/nbval_outputs.py``):
   so ``make test`` executes each chapter once, from a pip install, outside the repository.
   ``--jobs N`` notebooks run at once (pytest-xdist, ``--dist loadfile``: each notebook on one
   worker, its cells in order on one kernel); default one per core, at most four.

Exit status 1 with the failing step named.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_READS_RESULTS = re.compile(r"committed_(result|table|names)|load_results\(")


def chapters_reading_results(book: Path = ROOT / "book") -> list[str]:
    return sorted(md.stem for md in book.glob("*.md") if _READS_RESULTS.search(md.read_text(encoding="utf-8")))


def clean_env(**extra) -> dict:
    """This process's environment without PYTHONPATH (which could lend the repository's package)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("env", clean_env())
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))[:200]} failed ({proc.returncode}):\n"
                           f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def build_env(tmp: Path) -> Path:
    """The fresh environment with the wheel installed; returns its python."""
    # build from a copy of what the wheel is made of, so no build/ folder lands in the checkout
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "pmi_tutorial", src / "pmi_tutorial",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(src)])
    wheel = next(wheels.glob("pmi_tutorial-*.whl"))
    env = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(env)])
    py = env / "bin" / "python"
    purelib = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    lent = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "zz_lent_dependencies.pth").write_text("\n".join(lent) + "\n")
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
         "--target", str(purelib), str(wheel)])
    return py


CHECK_RESULTS = r"""
import json, sys, pathlib
import pmi_tutorial
from pmi_tutorial import files
where = pathlib.Path(pmi_tutorial.__file__).resolve()
names = files.committed_names()
loaded = {n: type(files.committed_result(n)).__name__ for n in names}
print(json.dumps({"file": str(where), "names": names, "loaded": loaded}))
"""


def check_results(py: Path, work: Path, env_dir: Path) -> list[str]:
    out = json.loads(run([str(py), "-c", CHECK_RESULTS], cwd=work).stdout.strip().splitlines()[-1])
    problems = []
    if not Path(out["file"]).is_relative_to(env_dir):
        problems.append(f"pmi_tutorial was imported from {out['file']}, not from the installed wheel")
    expected = sorted(p.stem for p in (ROOT / "pmi_tutorial" / "results").glob("*.json"))
    if out["names"] != expected:
        problems.append(f"the wheel ships results {out['names']}, the repository has {expected}")
    if set(out["loaded"].values()) != {"dict"}:
        problems.append(f"some committed results did not load: {out['loaded']}")
    print(f"wheel_test: {len(out['names'])} committed results load from the wheel ({out['file']})", flush=True)
    return problems


def execute_notebooks(py: Path, work: Path, names: list[str], env: dict) -> list[str]:
    import nbformat
    from nbclient import NotebookClient

    kernels = work / "jupyter" / "kernels" / "pmi-wheel"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "pmi_tutorial wheel", "language": "python"}))
    problems = []
    old = dict(os.environ)
    new = clean_env(**env, JUPYTER_PATH=str(work / "jupyter"))
    os.environ.clear()
    os.environ.update(new)
    try:
        for name in names:
            src = ROOT / "notebooks" / f"{name}.ipynb"
            nb = nbformat.read(src, as_version=4)
            nb.cells = [c for c in nb.cells if "nbval-skip" not in c.get("metadata", {}).get("tags", [])]
            nb.cells.insert(0, nbformat.v4.new_code_cell(
                "import sys, pmi_tutorial\n"
                "assert pmi_tutorial.__file__.startswith(sys.prefix), pmi_tutorial.__file__"))
            target = work / f"{name}.ipynb"
            nbformat.write(nb, target)
            start = time.perf_counter()
            try:
                NotebookClient(nb, kernel_name="pmi-wheel", timeout=900,
                               resources={"metadata": {"path": str(work)}}).execute()
                print(f"wheel_test: {name}.ipynb executed in {work} ({time.perf_counter() - start:.0f} s)", flush=True)
            except Exception as exc:  # a cell error: name the notebook and the error
                problems.append(f"{name}.ipynb fails from a pip install: {type(exc).__name__}: {str(exc)[-600:]}")
    finally:
        os.environ.clear()
        os.environ.update(old)
    return problems


def jobs_default() -> int:
    """Notebooks under nbval at once: one per core, at most four (as ``make unit``)."""
    return max(1, min(4, os.cpu_count() or 1))


def run_nbval(py: Path, work: Path, env: dict, jobs: int = 1) -> list[str]:
    """nbval over every reader notebook, copied into ``work``, on the fresh environment's Python.

    The plugins ``nbval_outputs`` (keep the outputs, fill the book build's cache) and
    ``notebook_timing`` are copied into a folder of their own, so that nothing else of the
    repository is importable there.
    """
    plugins = work.parent / "plugins"
    plugins.mkdir()
    for name in ("nbval_outputs.py", "notebook_timing.py"):
        shutil.copy2(ROOT / "scripts" / name, plugins / name)
    names = []
    for src in sorted((ROOT / "notebooks").glob("*.ipynb")):
        shutil.copy2(src, work / src.name)
        names.append(src.name)
    xdist = ["-n", str(jobs), "--dist", "loadfile"] if jobs > 1 else []
    cmd = [str(py), "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "notebook_timing",
           "-p", "nbval_outputs", "-q", "-p", "no:cacheprovider", *xdist, *names]
    full = clean_env(**env, PYTHONPATH=str(plugins), PMI_REPO_ROOT=str(ROOT))
    print(f"wheel_test: nbval on {len(names)} reader notebooks in {work}, {jobs} at once", flush=True)
    rc = subprocess.call(cmd, cwd=work, env=full)
    return [] if rc == 0 else [f"nbval failed (exit status {rc}) on the reader notebooks run from a pip install"]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chapters", help="comma-separated reader notebooks to execute (default: those reading results)")
    ap.add_argument("--nbval", action="store_true",
                    help="run nbval over every reader notebook instead (make nbval), keeping the outputs")
    ap.add_argument("--jobs", type=int, default=jobs_default(),
                    help="with --nbval: notebooks run at once, each on a worker of its own (default: "
                         "one per core, at most 4)")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs must be a positive integer, got {args.jobs}")
    names = ([n for n in args.chapters.split(",") if n] if args.chapters is not None
             else chapters_reading_results())
    with tempfile.TemporaryDirectory(prefix="pmi-wheel-") as tmp_name:
        tmp = Path(tmp_name).resolve()
        if tmp.is_relative_to(ROOT):
            print(f"wheel_test: the temporary folder {tmp} lies inside the repository; set TMPDIR")
            return 1
        try:
            py = build_env(tmp)
        except (RuntimeError, StopIteration) as exc:
            print(f"wheel_test: building or installing the wheel failed: {exc}")
            return 1
        work = tmp / "reader"
        work.mkdir()
        env = {"PMI_PROFILE": os.environ.get("PMI_PROFILE", "quick"),
               "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
        problems = check_results(py, work, tmp / "venv")
        if args.nbval:
            problems += run_nbval(py, work, env, args.jobs)
        else:
            problems += execute_notebooks(py, work, names, env)
    if problems:
        print(f"wheel_test: {len(problems)} problem(s):")
        for p in problems:
            print(f"  {p}")
        return 1
    ran = "every reader notebook under nbval" if args.nbval else ", ".join(names) or "no notebook"
    print(f"wheel_test: OK (the wheel in a fresh environment: committed results and {ran}, from outside the repository)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
