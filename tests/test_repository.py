"""The one repository setting (pmi_tutorial.repository) and that the URL is written nowhere else."""

import re
import subprocess
from pathlib import Path

import pytest

from pmi_tutorial import repository

ROOT = Path(__file__).resolve().parent.parent


def test_derived_addresses():
    assert repository.owner_and_name("https://github.com/alice/pmi-fork") == ("alice", "pmi-fork")
    assert repository.pages_url("https://github.com/Alice/pmi-fork") == "https://alice.github.io/pmi-fork/"
    assert repository.pages_url("https://github.com/alice/alice.github.io") == "https://alice.github.io/"
    assert repository.raw_url("a/b.json", "https://github.com/alice/x", "dev") == \
        "https://raw.githubusercontent.com/alice/x/dev/a/b.json"
    assert repository.requirement("https://github.com/alice/x", "dev") == "pmi_tutorial @ git+https://github.com/alice/x@dev"


@pytest.mark.parametrize("bad", ["http://github.com/a/b", "https://gitlab.com/a/b", "https://github.com/a"])
def test_bad_url_is_refused(bad):
    with pytest.raises(ValueError, match="repository.py"):
        repository.owner_and_name(bad)


def test_substitute_replaces_known_names_only():
    text = "clone {{ repository_url }} at {{branch}}; read {{ book_url }}; {{ other }}"
    out = repository.substitute(text)
    assert out == (f"clone {repository.URL} at {repository.BRANCH}; read {repository.pages_url()}; {{{{ other }}}}")


def _tracked_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / f for f in out.stdout.split("\0") if f]


def test_repository_url_is_written_in_one_place():
    """The owner/name pair appears in pmi_tutorial/repository.py only (generated reader
    notebooks carry the value the generator put in; they are checked against the generator)."""
    owner, name = repository.owner_and_name()
    pattern = re.compile(rf"(github\.com|githubusercontent\.com)/{re.escape(owner)}/{re.escape(name)}", re.I)
    found = []
    for path in _tracked_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("notebooks/") or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if pattern.search(text):
            found.append(rel)
    assert found == ["pmi_tutorial/repository.py"], (
        f"the repository URL is written out in {found}; derive it from pmi_tutorial.repository instead")


def test_readme_links_the_published_book_and_says_how_a_fork_changes_it():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"]({repository.pages_url()})" in readme, "README must link the published book"
    assert "pmi_tutorial/repository.py" in readme, "README must say where a fork sets its URL"
