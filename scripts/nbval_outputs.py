"""pytest plugin: keep what nbval executed, so the book build does not execute it again.

Load it with ``pytest --nbval-lax -p scripts.nbval_outputs notebooks/`` (``make nbval`` does).
For every reader notebook ``notebooks/NAME.ipynb`` whose cells all passed, at the end of the
session it

* writes the executed notebook to ``_build/reader_notebooks/NAME.ipynb`` (what a reader
  gets, with outputs: ``scripts/check_outputs.py`` and the browser check read it);
* stores the chapter ``book/NAME.md``, with the same outputs cell by cell, in the book build's
  execution cache (``_build/.jupyter_cache``; ``execute_notebooks: cache`` in ``_config.yml``).
  The reader notebook's code cells are the chapter's own, so they pair one to one.  The book
  build then finds every chapter in the cache and executes none of them a second time.

A notebook with a failed cell is written nowhere: the build executes that chapter itself.
Under pytest-xdist (``-n 2 --dist loadfile``: each notebook on one worker) every worker writes
the reader notebooks it ran, and the controller alone stores them in the cache, one writer for
its database, once every worker has finished.
``make nbval`` runs it from a fresh environment with the package installed from its wheel, in
a folder outside the repository (``scripts/wheel_test.py --nbval``); ``$PMI_REPO_ROOT`` then
names the checkout whose ``_build`` and ``book`` it writes to and reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# $PMI_REPO_ROOT: the checkout, when the plugin runs from a copy (scripts/wheel_test.py --nbval)
ROOT = Path(os.environ.get("PMI_REPO_ROOT") or Path(__file__).resolve().parent.parent)
OUT_DIR = ROOT / "_build" / "reader_notebooks"
CACHE_DIR = ROOT / "_build" / ".jupyter_cache"

_files: dict[str, object] = {}  # notebook path -> nbval's IPyNbFile collector
_failed: set[str] = set()
_ran: set[int] = set()  # id() of every cell nbval executed (not skipped)


def _path(item) -> str:
    return str(item.nodeid.split("::", 1)[0])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield
    cell = getattr(item, "cell", None)
    if cell is None or not _path(item).endswith(".ipynb"):
        return
    _files[_path(item)] = item.parent
    cell.outputs = list(item.test_outputs or [])
    if item.test_outputs is not None:
        _ran.add(id(cell))


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb") and report.failed:
        _failed.add(path)


def chapter_notebook(md: Path):
    """The chapter as the book build reads it (myst-nb's reader, repository values filled in)."""
    from myst_nb.core.config import NbParserConfig
    from myst_nb.core.read import create_nb_reader
    from myst_parser.config.main import MdParserConfig

    from pmi_tutorial import repository

    text = repository.substitute(md.read_text(encoding="utf-8"))
    reader = create_nb_reader(str(md), MdParserConfig(), NbParserConfig(), text)
    return reader.read(text)


def seed_cache(md: Path, executed, cache_dir: Path = CACHE_DIR) -> None:
    """Put ``md`` with the outputs of ``executed`` (its reader notebook, run) into the cache."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    nb = chapter_notebook(md)
    mine = [c for c in nb.cells if c.cell_type == "code"]
    ran = [c for c in executed.cells if c.cell_type == "code"]
    if [c.source for c in mine] != [c.source for c in ran]:
        raise ValueError(f"{md}: its reader notebook's code cells differ; run `make notebooks`")
    for k, (a, b) in enumerate(zip(mine, ran), 1):
        a.outputs = b.outputs
        a.execution_count = k
    get_cache(str(cache_dir)).cache_notebook_bundle(
        CacheBundleIn(nb, str(md.resolve()), data={"executed_by": "nbval"}),
        check_validity=False, overwrite=True)


def _write_reader_notebooks() -> list[str]:
    """Write every notebook this process ran with all cells passing to ``OUT_DIR``; returns their
    file names."""
    import nbformat

    written = []
    for path, collector in sorted(_files.items()):
        if path in _failed:
            continue
        nb = collector.nb
        count = 0
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.setdefault("outputs", [])
                if id(cell) in _ran:
                    count += 1
                    cell.execution_count = count
                else:
                    cell.execution_count = None
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        target = OUT_DIR / Path(path).name
        tmp = target.with_suffix(".tmp")
        nbformat.write(nb, str(tmp))
        os.replace(tmp, target)
        written.append(target.name)
    return written


_from_workers: list[str] = []  # under xdist: the reader notebooks the workers wrote


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist's controller: a worker finished; note the reader notebooks it wrote."""
    _from_workers.extend(getattr(node, "workeroutput", {}).get("nbval_outputs", []))


def pytest_sessionfinish(session, exitstatus):
    import nbformat

    written = _write_reader_notebooks()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller fills the cache
        workeroutput["nbval_outputs"] = written
        return
    for name in sorted(set(written) | set(_from_workers)):
        md = ROOT / "book" / (Path(name).stem + ".md")
        if md.exists():
            seed_cache(md, nbformat.read(str(OUT_DIR / name), as_version=4))
