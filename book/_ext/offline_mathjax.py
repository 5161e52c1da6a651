"""MathJax 3 served from the book's own static files, so that the math of every page typesets
offline, behind a firewall and in the published site alike.

At the start of a build the MathJax 3 bundles (the ``es5`` folder of the npm package
``mathjax``) are copied into ``book/_static/mathjax`` (ignored by git), which Sphinx copies to
``_build/html/_static/mathjax``; ``_config.yml`` points ``mathjax_path`` there.  The copy comes
from ``$MATHJAX3_DIR`` when set, else from ``~/.cache/pmi-tutorial/mathjax3`` (the folder that
``scripts/browser_check.py`` also uses), filled with ``npm pack mathjax@3`` when it is empty.
Every page loads MathJax (not only the pages with a displayed equation), so that math in
titles, captions and the navigation typesets too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

VERSION = "3"
BUNDLE = "tex-mml-chtml.js"
DEST = Path(__file__).resolve().parent.parent / "_static" / "mathjax"


def _cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pmi-tutorial" / "mathjax3"


def source_folder() -> Path:
    """The ``es5`` folder of MathJax 3: ``$MATHJAX3_DIR``, the cache, or ``npm pack`` into the cache."""
    env = os.environ.get("MATHJAX3_DIR")
    if env:
        if not (Path(env) / BUNDLE).is_file():
            raise RuntimeError(f"MATHJAX3_DIR={env} has no {BUNDLE}; point it at the es5 folder of the "
                               "npm package mathjax@3, or unset it")
        return Path(env)
    cache = _cache()
    folder = cache / "package" / "es5"
    if (folder / BUNDLE).is_file():
        return folder
    if not shutil.which("npm"):
        raise RuntimeError("the book serves MathJax 3 from its own files and needs the npm package "
                           "mathjax@3 once: install npm (apt-get install npm) or set MATHJAX3_DIR to "
                           "the es5 folder of an unpacked mathjax@3")
    cache.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["npm", "pack", f"mathjax@{VERSION}", "--silent", "--pack-destination", str(cache)],
                         capture_output=True, text=True)
    tgz = sorted(cache.glob(f"mathjax-{VERSION}*.tgz"))
    if out.returncode != 0 or not tgz:
        raise RuntimeError(f"npm pack mathjax@{VERSION} failed ({out.stderr.strip()[:200]}); "
                           "set MATHJAX3_DIR to the es5 folder of an unpacked mathjax@3")
    with tarfile.open(tgz[-1]) as tar:
        tar.extractall(cache, filter="data")
    return folder


def install(dest: Path = DEST) -> Path:
    """Copy MathJax 3 into ``dest`` unless it is there already; returns ``dest``."""
    if (dest / BUNDLE).is_file():
        return dest
    src = source_folder()
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def _on_builder_inited(app):
    if app.builder.format == "html":
        install()


def setup(app):
    app.connect("builder-inited", _on_builder_inited)
    app.set_html_assets_policy("always")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
