"""scripts/nbval_outputs.py: what nbval executed is kept (reader notebooks, the book's cache),
in one process and under pytest-xdist, where the workers run the notebooks."""

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAD = ("---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
        "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n")
CHAPTERS = {"a": "x = 6 * 7\nx", "b": "print('b', 2 + 3)", "c": "assert 1 + 1 == 3"}  # c fails


@pytest.mark.parametrize("xdist", [[], ["-n", "2", "--dist", "loadfile"]], ids=["one process", "xdist"])
def test_passing_notebooks_are_written_and_cached_failing_ones_not(tmp_path, xdist):
    from jupyter_cache import get_cache

    repo, work = tmp_path / "repo", tmp_path / "work"
    (repo / "book").mkdir(parents=True)
    work.mkdir()
    for name, code in CHAPTERS.items():
        md = repo / "book" / f"{name}.md"
        md.write_text(f"{HEAD}# {name}\n\n```{{code-cell}} ipython3\n{code}\n```\n")
        nbformat.write(jupytext.read(md), work / f"{name}.ipynb")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "scripts"), str(ROOT)]),
           "PMI_REPO_ROOT": str(repo)}
    run = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
                          "-p", "nbval_outputs", "-q", "-p", "no:cacheprovider", *xdist,
                          "a.ipynb", "b.ipynb", "c.ipynb"], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]  # c's cell fails

    out = repo / "_build" / "reader_notebooks"
    assert sorted(p.name for p in out.iterdir()) == ["a.ipynb", "b.ipynb"]
    a, b = (nbformat.read(out / f"{n}.ipynb", as_version=4).cells[1] for n in "ab")
    assert a.outputs[0]["data"]["text/plain"] == "42" and a.execution_count == 1
    assert b.outputs[0]["text"] == "b 5\n"

    cache = get_cache(str(repo / "_build" / ".jupyter_cache"))
    records = {Path(r.uri).stem: r for r in cache.list_cache_records()}
    assert sorted(records) == ["a", "b"]
    assert all(r.data == {"executed_by": "nbval"} for r in records.values())
    cached = cache.get_cache_bundle(records["a"].pk).nb
    assert [c.outputs for c in cached.cells if c.cell_type == "code"] == [a.outputs]
