"""The declared dependency ranges admit later minor releases (a light install on Colab)."""

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]


def test_no_upper_bound_below_the_next_major_release():
    for req in RUNTIME:
        for spec in req.specifier:
            if spec.operator in ("<", "<="):
                v = Version(spec.version)
                assert spec.operator == "<" and v.minor == 0 and v.micro == 0, (
                    f"{req}: '{spec}' caps a minor release; pip would replace a newer preinstalled "
                    f"{req.name} (Colab's). Cap at the next major at most.")
            assert spec.operator not in ("==", "~=", "==="), f"{req}: pinned"


@pytest.mark.parametrize("name, later", [
    ("torch", ["2.15.0", "2.16.1", "2.30.0"]),
    ("torchvision", ["0.30.0", "0.31.0", "0.45.2"]),
    ("numpy", ["2.5.0", "3.1.0"]),
    ("scipy", ["1.17.0"]),
    ("matplotlib", ["3.11.0"]),
])
def test_later_minor_releases_are_admitted(name, later):
    req = next(r for r in RUNTIME if r.name == name)
    for v in later:
        assert req.specifier.contains(v), f"{req} refuses {name} {v}"


def test_the_installed_versions_are_admitted():
    from importlib.metadata import version

    for req in RUNTIME:
        installed = re.sub(r"\+.*$", "", version(req.name))
        assert req.specifier.contains(installed), f"{req} refuses the installed {req.name} {installed}"


def test_requires_python_matches_the_oldest_tested():
    assert PROJECT["requires-python"] == ">=3.10"
