#!/usr/bin/env bash
# The unit tests on the other Pythons the package must work on (make unit-pythons):
# 3.12, what Colab runs, and 3.10, the oldest that pyproject.toml declares.  The main venv
# runs them on its own Python (make unit).
#
# Each version gets a venv .venv-pyX.Y.  Creating one downloads torch for that Python, and on
# Linux PyPI has only multi-GB CUDA builds, too much for every CI run; so a missing venv is
# created only with PMI_INSTALL_OTHER_PYTHONS=1 (set PIP_EXTRA_INDEX_URL to
# https://download.pytorch.org/whl/cpu for the small CPU builds where that index is
# reachable).  Otherwise the version is skipped with a message saying so; a version whose
# interpreter is not on this machine is skipped likewise.  Any test failure fails the target.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for v in ${PMI_OTHER_PYTHONS-3.12 3.10}; do
  py=""
  if command -v "python$v" >/dev/null 2>&1 && "python$v" -c "" >/dev/null 2>&1; then
    py="python$v"
  else
    for cand in "$HOME"/.pyenv/versions/"$v"*/bin/python; do
      [ -x "$cand" ] && py="$cand" && break
    done
  fi
  if [ -z "$py" ]; then
    echo "unit-pythons: Python $v: skipped, no interpreter on this machine"
    continue
  fi
  venv=".venv-py$v"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    if [ "${PMI_INSTALL_OTHER_PYTHONS:-0}" != 1 ]; then
      echo "unit-pythons: Python $v: skipped, $venv has no torch; creating it downloads torch for Python $v" \
           "(multi-GB CUDA wheels from PyPI). Run: PMI_INSTALL_OTHER_PYTHONS=1 make unit-pythons"
      continue
    fi
    "$py" -m venv "$venv" && "$venv/bin/python" -m pip install --quiet -e ".[dev]" || { status=1; continue; }
  fi
  echo "unit-pythons: Python $v ($("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])'))"
  "$venv/bin/python" -m pytest tests -q || status=1
done
exit $status
