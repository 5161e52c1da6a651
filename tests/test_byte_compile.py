"""scripts/byte_compile.py: the installed packages compiled on every core, as pip compiles them."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_compiles_what_compiles_and_names_what_this_python_cannot(tmp_path):
    (tmp_path / "pkg").mkdir()
    good = tmp_path / "pkg" / "good.py"
    good.write_text("x = 1\n")
    bad = tmp_path / "pkg" / "newer_syntax.py"
    bad.write_text("def f(a):\n    return a +\n")  # a syntax error, as a newer Python's syntax is here
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "byte_compile.py"), str(tmp_path)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "1 file(s) this Python cannot compile" in run.stdout and str(bad) in run.stdout
    pyc = Path(importlib.util.cache_from_source(str(good)))
    assert pyc.is_file() and not Path(importlib.util.cache_from_source(str(bad))).exists()
    # what pip writes: an unoptimised pyc checked against the source's timestamp (flags 0)
    header = pyc.read_bytes()[:16]
    assert header[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(header[4:8], "little") == 0


def test_setup_installs_without_pips_compile_and_then_compiles():
    make = (ROOT / "Makefile").read_text()
    recipe = make[make.index("$(VENV)/.installed:"):make.index("setup: $(VENV)/.installed")]
    install = re.search(r"pip install --quiet --no-compile -e \"\.\[dev\]\"", recipe)
    compile_step = recipe.find("scripts/byte_compile.py")
    assert install and compile_step > install.end()
