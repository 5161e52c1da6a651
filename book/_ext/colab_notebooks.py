"""The book's repository links and Colab buttons, from the one repository setting.

* The repository URL and branch come from :mod:`pmi_tutorial.repository` (the only place they
  are written): this extension puts them into the theme options that ``_config.yml`` would
  otherwise carry, turns on the repository button, and adds a header link to the published
  book.  ``{{ repository_url }}``, ``{{ branch }}``, ``{{ book_url }}`` and ``{{ requirement }}``
  in a chapter are replaced by their values before the chapter is parsed.
* sphinx-book-theme builds the Colab link from the page's source file, ``book/NAME.md``, which
  Colab cannot open.  Every chapter has a reader notebook ``notebooks/NAME.ipynb`` generated
  from it (``make notebooks``), so after the theme has built its buttons we rewrite that link.
"""

from __future__ import annotations

import re

from pmi_tutorial import repository

# .../blob/<branch>/book/<name>.md  ->  .../blob/<branch>/notebooks/<name>.ipynb
_BOOK_PAGE = re.compile(r"(/blob/[^/]+/)book/(.+?)\.(?:md|ipynb)$")


def colab_url(url: str) -> str:
    """The Colab URL of the reader notebook for the URL of a ``book/NAME.md`` page."""
    return _BOOK_PAGE.sub(r"\1notebooks/\2.ipynb", url)


def _rewrite(buttons) -> None:
    for button in buttons:
        if button.get("type") == "group":
            _rewrite(button.get("buttons", []))
        elif "colab.research.google.com" in button.get("url", ""):
            button["url"] = colab_url(button["url"])


def _on_page_context(app, pagename, templatename, context, doctree):
    _rewrite(context.get("header_buttons", []))


def _on_config(app, config):
    options = dict(config.html_theme_options or {})
    options["repository_url"] = repository.URL
    options["repository_branch"] = repository.BRANCH
    options["use_repository_button"] = True
    links = [link for link in options.get("icon_links", []) if link.get("name") != "Read online"]
    links.append({"name": "Read online", "url": repository.pages_url(),
                  "icon": "fa-solid fa-book-open", "type": "fontawesome"})
    options["icon_links"] = links
    config.html_theme_options = options
    config.html_baseurl = repository.pages_url()


def _on_source_read(app, docname, source):
    # {{ repository_url }} and friends, in code blocks and code cells too (the reader notebooks
    # get the same values from scripts/make_notebooks.py)
    source[0] = repository.substitute(source[0])


def setup(app):
    app.connect("config-inited", _on_config)
    app.connect("source-read", _on_source_read)
    # The theme adds its launch buttons at priority 501; run after it.
    app.connect("html-page-context", _on_page_context, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
