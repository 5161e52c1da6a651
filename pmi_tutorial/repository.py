"""Where the project lives: the one repository setting.

The repository URL and branch are written here and nowhere else.  The book's launch and
repository buttons (``book/_ext/colab_notebooks.py``), the install cell of every reader
notebook (``scripts/make_notebooks.py``), the published book's address and the download hint
of :mod:`pmi_tutorial.report` are all derived from these two values.  A fork changes
``URL`` (and ``BRANCH`` if it publishes from another branch), then runs ``make notebooks``.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

URL = "https://github.com/pmi-tutorial/pmi-tutorial"
BRANCH = "main"


def owner_and_name(url: str = URL) -> tuple[str, str]:
    """``("owner", "name")`` of a ``https://github.com/owner/name`` URL."""
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if parts.scheme != "https" or parts.netloc != "github.com" or len(path) != 2:
        raise ValueError(f"repository URL {url!r} is not of the form https://github.com/OWNER/NAME; "
                         "fix URL in pmi_tutorial/repository.py")
    owner, name = path
    return owner, name.removesuffix(".git")


def pages_url(url: str = URL) -> str:
    """The GitHub Pages address where the publishing workflow deploys the book (ends in ``/``)."""
    owner, name = owner_and_name(url)
    if name.lower() == f"{owner.lower()}.github.io":
        return f"https://{owner.lower()}.github.io/"
    return f"https://{owner.lower()}.github.io/{name}/"


def raw_url(path: str, url: str = URL, branch: str = BRANCH) -> str:
    """The raw-download address of a file of the repository, e.g. ``raw_url("README.md")``."""
    owner, name = owner_and_name(url)
    return f"https://raw.githubusercontent.com/{owner}/{name}/{branch}/{path.lstrip('/')}"


def requirement(url: str = URL, branch: str = BRANCH) -> str:
    """The pip requirement that installs the package from the repository's branch."""
    owner_and_name(url)
    return f"pmi_tutorial @ git+{url}@{branch}"


_SUBST = re.compile(r"\{\{\s*(repository_url|branch|book_url|requirement)\s*\}\}")


def substitutions() -> dict[str, str]:
    """What ``{{ name }}`` stands for in the chapters (the book build and the reader notebooks
    replace it before anything else reads the text)."""
    return {"repository_url": URL, "branch": BRANCH, "book_url": pages_url(),
            "requirement": requirement()}


def substitute(text: str) -> str:
    """``text`` with every ``{{ repository_url }}``, ``{{ branch }}``, ``{{ book_url }}`` and
    ``{{ requirement }}`` replaced by its value; any other ``{{ ... }}`` is left as it is."""
    values = substitutions()
    return _SUBST.sub(lambda m: values[m.group(1)], text)
