"""scripts/lint_workflows.py: the publishing workflow runs what .ci/run runs and deploys."""

import copy
from pathlib import Path

import pytest
import yaml

from scripts import lint_workflows as lw

ROOT = Path(__file__).resolve().parent.parent
BOOK = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
CI = (ROOT / ".ci" / "run").read_text()


def test_make_targets():
    assert lw.make_targets("set -e\nmake test\nrm -rf x && make VENV=y book check-html\n") == \
        ["test", "book", "check-html"]


def test_the_committed_workflow_passes():
    assert lw.check_book_workflow(BOOK, CI) == []


def _broken(change):
    wf = copy.deepcopy(BOOK)
    change(wf)
    return lw.check_book_workflow(wf, CI)


@pytest.mark.parametrize("change, what", [
    (lambda wf: wf.__setitem__(True if True in wf else "on", {"push": {"branches": ["dev"]}}), "push to main"),
    (lambda wf: [s.__setitem__("run", "make book") for s in wf["jobs"]["build"]["steps"] if "run" in s], ".ci/run runs"),
    (lambda wf: wf["jobs"].pop("deploy"), "deploy"),
    (lambda wf: [s["with"].__setitem__("path", "site") for s in wf["jobs"]["build"]["steps"]
                 if s.get("uses", "").startswith("actions/upload-pages")], "_build/html"),
])
def test_a_broken_workflow_is_reported(change, what):
    problems = _broken(change)
    assert any(what in p for p in problems), problems


def test_syntax_lint_passes_on_the_committed_workflows():
    tool, problems = lw.lint_syntax(sorted((ROOT / ".github" / "workflows").glob("*.yml")))
    assert tool != "none" and problems == []


def test_syntax_lint_catches_a_bad_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\non: push\njobs:\n  a:\n    steps: 3\n")
    tool, problems = lw.lint_syntax([bad])
    assert problems, tool
