"""Point the Colab launch button at the paired notebook ``notebooks/NAME.ipynb``.

sphinx-book-theme builds the Colab link from the page's source file, ``book/NAME.md``, which
Colab cannot open.  The chapters are paired by jupytext with ``notebooks/NAME.ipynb`` (see
``jupytext.toml``), so after the theme has built its buttons we rewrite that one link.
"""

from __future__ import annotations

import re

# .../blob/<branch>/book/<name>.md  ->  .../blob/<branch>/notebooks/<name>.ipynb
_BOOK_PAGE = re.compile(r"(/blob/[^/]+/)book/(.+?)\.(?:md|ipynb)$")


def colab_url(url: str) -> str:
    """The Colab URL of the paired notebook for the URL of a ``book/NAME.md`` page."""
    return _BOOK_PAGE.sub(r"\1notebooks/\2.ipynb", url)


def _rewrite(buttons) -> None:
    for button in buttons:
        if button.get("type") == "group":
            _rewrite(button.get("buttons", []))
        elif "colab.research.google.com" in button.get("url", ""):
            button["url"] = colab_url(button["url"])


def _on_page_context(app, pagename, templatename, context, doctree):
    _rewrite(context.get("header_buttons", []))


def setup(app):
    # The theme adds its launch buttons at priority 501; run after it.
    app.connect("html-page-context", _on_page_context, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
